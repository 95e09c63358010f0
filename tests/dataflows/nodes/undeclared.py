"""Sends on an output it did not declare."""

from pinflow import Node

Node().send_output("nope", b"x")
