"""`python -m service`: serve the API with gunicorn (service/server/main.py)."""

from service.server.main import main

if __name__ == "__main__":
    main()
