"""``nemoguard review``: a plain web page over audit trails and eval runs, to read verdicts and label them.

* :mod:`.store` reads audit records (``nemoguard.audit/1``) and eval result rows (``nemoguard.eval/1``, run
  folders with their report and plots), filters them, and appends human labels (``nemoguard.label/1``) to a
  JSONL file that ``nemoguard eval`` reads as a data set;
* :mod:`.pages` renders HTML with every value escaped (records hold attacker-controlled text), no JavaScript;
* :mod:`.app` is the Starlette app: a Host allow-list (no DNS rebinding), a per-process CSRF token on every
  form, a Content-Security-Policy that forbids scripts, bounded request bodies;
* :mod:`.server` runs it (loopback by default) in the foreground or in a background thread.

Its server stack is Starlette and uvicorn: ``pip install 'langchain-nemoguard[review]'``.
"""
