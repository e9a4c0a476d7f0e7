"""`wesfarm bench` and `wesfarm calibrate`: performance figures against same-run baselines."""
