"""The HTTP application: route modules, typed dependencies, the request guard and the OpenAPI document."""
