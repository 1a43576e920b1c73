"""The MQTT broker's view of tenants and devices: dynamic-security lists and the access plugin's deny
list, kept in step with the control plane."""
