"""The block builder's side: FarmClient and the `wesfarm` CLI."""
