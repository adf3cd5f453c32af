"""The command lines: vxvdex-session, vxvdex-plug, and the error handling they share with vxvdexd."""
