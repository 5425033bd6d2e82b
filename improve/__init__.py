"""Improve: an event-driven workflow engine for service improvement actions."""
