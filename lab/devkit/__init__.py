"""The device kit: the contract between the engine and the devices in nat/ and firewall/.

What a device is given (view: NodeView), what it hands back (device: DeviceSetup, and the Device
entry the engine's registry lists), the shared runtime of device programs (events, nfq,
tcpseg, ctrlstream), observed drops (observed), the NFQUEUE numbers (queues), the kernel features
a device needs (features) and the shared types (types). It imports only the FTP grammar.
"""
