"""The five pipeline stages. Each module has a pure `run(...)` and a `main()` that does the file I/O:
`python -m logitlab.stages.<stage>` reads only its own sections of params.yaml (DVC declares the same)."""
