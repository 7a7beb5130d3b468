"""The dashboard: its page and static files (static/), served by the API itself."""
