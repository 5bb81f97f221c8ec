"""One module per Neutron resource: its attribute map, how its rows become API views, and
what create/update/delete write (always inside the caller's single transaction)."""
