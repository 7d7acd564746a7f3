"""``s2s serve``: a fine-tuned model over HTTP (FastAPI + uvicorn, the extra ``s2s-core[serve]``)."""
