"""The steps of the process: routing, approvals, mail, planning, impact."""
