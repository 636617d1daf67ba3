"""A local S3 endpoint for trying ``s3://`` paths without a cloud account (``make s3-dev``).

Runs a moto server on 127.0.0.1 (nothing leaves the machine; data lives in memory until you
stop it with Ctrl-C) and creates a bucket. Then, in another shell:

    export LSDA_S3_ENDPOINT=http://127.0.0.1:9000 AWS_ACCESS_KEY_ID=dev AWS_SECRET_ACCESS_KEY=dev
    lsda toyworld --out s3://lsda-dev/toyworld --size quick
    lsda run --data s3://lsda-dev/toyworld --work s3://lsda-dev/work --quick

(``--s3-endpoint URL`` on any command does what LSDA_S3_ENDPOINT does.)
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=9000)
    p.add_argument("--bucket", default="lsda-dev")
    args = p.parse_args()

    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{args.port}"
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "dev")  # moto accepts any pair
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "dev")
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
        Bucket=args.bucket
    )
    print(f"S3 on {endpoint}, bucket s3://{args.bucket}; Ctrl-C stops it (and forgets the data)")
    print(f"export LSDA_S3_ENDPOINT={endpoint} AWS_ACCESS_KEY_ID=dev AWS_SECRET_ACCESS_KEY=dev")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
