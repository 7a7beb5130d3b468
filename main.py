"""The seed's `python main.py`: start the ingest API (the same as `python -m service`).

Prints `Running on http://127.0.0.1:5000` and `Running on http://0.0.0.0:5000`, then serves
POST /sensor with gunicorn. Configuration comes from the environment and `.env`.
"""

from service.server.main import main

if __name__ == "__main__":
    main()
