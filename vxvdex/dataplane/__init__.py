"""The data plane: the vxvde wire format, taps, and the endpoint that forwards between them."""
