"""The real-Kafka test bed: brokers for the tests, the demo and the benchmark."""

from sidecar.testbed.kraft import KRaftCluster
from sidecar.testbed.provider import Broker, BrokerUnavailable, obtain_broker, open_broker

__all__ = ["Broker", "BrokerUnavailable", "KRaftCluster", "obtain_broker", "open_broker"]
