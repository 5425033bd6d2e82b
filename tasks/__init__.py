"""The domain: the steps of the process, each module named for the concept it holds.

tasks/ holds plain domain functions that take a session and keyword arguments and never touch
Prefect; flows/steps.py wraps them as Prefect tasks that open a session, commit and pass ids on.
A function here works in its caller's transaction and leaves the commit, and the event announced
after it (improve/events.py), to the caller: a step, the web app, the CLI, the demo or a test.
"""
