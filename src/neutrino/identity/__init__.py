"""The Keystone v3 subset: domains, projects, users, roles, tokens and the service catalog.

`IdentityService` (service.py) owns the data and answers `validate_token` for every API
request; `install` (api.py) adds the `/v3` routes to a FastAPI app;
`ExternalKeystoneValidator` (external.py) validates tokens of a real Keystone instead.
"""
