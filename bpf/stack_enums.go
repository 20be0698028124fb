package bpf

// The hand-written constants in stack.go and stack_trace.go must equal
// stack.bpf.c's enums as bpf2go generated them from BTF. Each line below
// indexes a one-element array with their difference: any other value than
// zero is out of range (or overflows the unsigned enum type) and fails the
// build, so the two cannot drift after a `make generate`.
func _() {
	var x [1]struct{}
	_ = x[DirectionRX-stackDirectionDIRECTION_RX]
	_ = x[DirectionTX-stackDirectionDIRECTION_TX]

	_ = x[ProtocolOther-stackProtocolPROTOCOL_OTHER]
	_ = x[ProtocolTCP-stackProtocolPROTOCOL_TCP]
	_ = x[ProtocolUDP-stackProtocolPROTOCOL_UDP]
	_ = x[ProtocolICMP-stackProtocolPROTOCOL_ICMP]
	_ = x[ProtocolICMPv6-stackProtocolPROTOCOL_ICMPV6]
	_ = x[ProtocolARP-stackProtocolPROTOCOL_ARP]

	_ = x[StageRXBacklog-stackStageSTAGE_RX_BACKLOG]
	_ = x[StageRXCore-stackStageSTAGE_RX_CORE]
	_ = x[StageRXIP-stackStageSTAGE_RX_IP]
	_ = x[StageRXSocket-stackStageSTAGE_RX_SOCKET]
	_ = x[StageTXIP-stackStageSTAGE_TX_IP]
	_ = x[StageTXNeigh-stackStageSTAGE_TX_NEIGH]
	_ = x[StageTXQdisc-stackStageSTAGE_TX_QDISC]
	_ = x[StageTXDriver-stackStageSTAGE_TX_DRIVER]
	_ = x[StageCount-stackStageSTAGE_COUNT]

	_ = x[tcpEventRetransmit-stackTcpEventTCP_EVENT_RETRANSMIT]
	_ = x[tcpEventResetTX-stackTcpEventTCP_EVENT_RESET_TX]
	_ = x[tcpEventResetRX-stackTcpEventTCP_EVENT_RESET_RX]
	_ = x[tcpEventPassiveOpen-stackTcpEventTCP_EVENT_PASSIVE_OPEN]

	_ = x[lostMapFull-stackLostCauseLOST_MAP_FULL]
	_ = x[lostTraceRingbuf-stackLostCauseLOST_TRACE_RINGBUF]
	_ = x[lostTraceRate-stackLostCauseLOST_TRACE_RATE]
	_ = x[lostReactionRingbuf-stackLostCauseLOST_REACTION_RINGBUF]
	_ = x[lostReactionRate-stackLostCauseLOST_REACTION_RATE]

	_ = x[ProbeTCP-stackProbeProtocolPROBE_TCP]
	_ = x[ProbeUDP-stackProbeProtocolPROBE_UDP]
	_ = x[ProbeProtocols-stackProbeProtocolPROBE_PROTOCOLS]

	_ = x[PointRXEntry-stackStageBoundaryBOUNDARY_RX_ENTRY]
	_ = x[PointRXNetifRecv-stackStageBoundaryBOUNDARY_RX_NETIF_RECEIVE]
	_ = x[PointRXPreRouting-stackStageBoundaryBOUNDARY_RX_PRE_ROUTING]
	_ = x[PointRXLocalIn-stackStageBoundaryBOUNDARY_RX_LOCAL_IN]
	_ = x[PointRXDelivered-stackStageBoundaryBOUNDARY_RX_DELIVERED]
	_ = x[PointTXLocalOut-stackStageBoundaryBOUNDARY_TX_LOCAL_OUT]
	_ = x[PointTXPostRouting-stackStageBoundaryBOUNDARY_TX_POST_ROUTING]
	_ = x[PointTXQueue-stackStageBoundaryBOUNDARY_TX_QUEUE]
	_ = x[PointTXStartXmit-stackStageBoundaryBOUNDARY_TX_START_XMIT]
	_ = x[PointTXXmit-stackStageBoundaryBOUNDARY_TX_XMIT]
	_ = x[PointRXQueued-stackTracePointTRACE_POINT_QUEUED]
	_ = x[PointRXXDP-stackTracePointTRACE_POINT_XDP]
	_ = x[TracePoints-stackTracePointTRACE_POINTS]

	_ = x[TraceEndDone-stackTraceEndTRACE_END_DONE]
	_ = x[TraceEndDrop-stackTraceEndTRACE_END_DROP]
	_ = x[TraceEndQueued-stackTraceEndTRACE_END_QUEUED]
}
