"""The tools around the service: never shipped in the Lambda package (``serverless.yml`` leaves ``libs/tools/`` out).

``local/`` is the local pipeline (moto's SQS on loopback, the poller, the
producer, the demo, redrive), ``report/`` the analysts' page, ``plot`` the
signal picture, ``synthetic`` the planted-anomaly coins, ``embedded_store`` the
``mongomock://`` store, and ``loopback/`` the wire-protocol and Data API
endpoints that tests and benchmarks talk to over real sockets. They build on
the service's modules; nothing on the Lambda path imports them.
"""
