"""The control plane: vxvdexd, its control socket, and the sessions it provisions and supervises."""
