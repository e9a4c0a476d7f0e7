"""`python -m engine.compile_child MEMORY_MB`: the compile wall's child (compile_sandbox.py)."""

from engine.compile_sandbox import serve_main

if __name__ == "__main__":
    raise SystemExit(serve_main())
