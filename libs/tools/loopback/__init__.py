"""Loopback endpoints that stand in for MongoDB over real sockets: the wire protocol and the Data API.

Test doubles shared by the tests and the benchmarks (which may not import
``tests``); never shipped in the Lambda package.
"""
