"""The LangChain adapter: ``GuardedRunnable`` (``guard.wrap``), ``NemoGuardMiddleware`` for agents.

Needs ``pip install 'langchain-nemoguard[langchain]'``.
"""
