"""intentwatch decision core: contracts, task state, detectors, policy and the engine.

Nothing in this package talks to Kafka or Faust; `streams/` wires it to the bus.
"""
