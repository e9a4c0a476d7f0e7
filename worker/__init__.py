"""The wesfarm worker: arq job functions, the executor subprocess pool, Redis I/O for
code, state and results, and the metrics endpoint. Importing it loads nothing heavy."""
