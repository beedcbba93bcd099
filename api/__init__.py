"""The API's shapes as the server shows them: rendering ledger records into the wire types
(`rayledger.schemas`) and events. Below the actors and the gateway, which both send them
(the webhooks actor delivers events rendered exactly as `GET /v1/events` shows them); on
the core and the client's wire types only."""
