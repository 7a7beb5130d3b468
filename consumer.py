"""The seed's `python consumer.py`: start the consumer pool with the seed's console output.

Prints `Listening to topic: sensor_data`, then `Message received: {...}` for every reading,
while the pool also stores the readings in SINK (the same as `python -m consumer_pool --echo`;
pass `--no-echo` or other flags of `python -m consumer_pool --help` to change that).
"""

import sys

from consumer_pool.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["--echo", *sys.argv[1:]]))
