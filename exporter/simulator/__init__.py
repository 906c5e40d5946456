"""A local OpenSRS Mail API (OMA) endpoint with simulated migration jobs.

Tests, the demo and benchmarks use it instead of a real OpenSRS host. It uses only the
standard library.
"""

from exporter.simulator.server import Faults, SimulatorServer
from exporter.simulator.simulation import Simulation

__all__ = ["Faults", "Simulation", "SimulatorServer"]
