"""Clients of the platform's services over their APIs: one per service."""
