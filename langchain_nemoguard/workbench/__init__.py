"""The policy workbench: author a policy, evaluate it on labelled data, compare runs, review decisions, label.

The loop the CLI drives (``nemoguard policy``, ``nemoguard eval``, ``nemoguard review``):

* :mod:`.data` and :mod:`.datasets` read labelled examples (generic CSV/JSONL, image rows, the public sets by
  name, and the review page's own labels) into :class:`~.data.DataSet`, with typed errors naming file and line;
* :mod:`.runner` judges them through a :class:`~langchain_nemoguard.NemoGuard` and appends one JSONL row per
  example to a results file (:mod:`.results`), so an interrupted run resumes where it stopped;
* :mod:`.metrics` and :mod:`.stats` turn rows into numbers (bootstrap intervals, McNemar, curves), :mod:`.report`
  into Markdown, :mod:`.plots` into PNGs (``pip install 'langchain-nemoguard[eval]'``), :mod:`.compare` puts two
  runs side by side;
* :mod:`.policy_tools` scaffolds and validates policy files;
* :mod:`.review` is the web page over audit trails and eval runs that writes labels back.

Nothing here is imported by the core or at start-up of ``nemoguard``.
"""
