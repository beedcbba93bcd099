"""The operator console (`gateway.console.pages`) and its sessions (`gateway.console.session`)."""
