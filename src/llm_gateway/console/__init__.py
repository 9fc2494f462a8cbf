"""The admin console at ``/ui``: server-rendered pages over the admin API's services and the usage ledger."""
