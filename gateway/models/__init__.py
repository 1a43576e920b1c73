"""Request and response models of the control-plane API (Create / Update / Public / List families)."""
