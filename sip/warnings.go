package sip

// warnWeakTrunks logs, once at start, every trunk setting that an admin
// opted into although it weakens the trunk's security, so that the
// choice stays visible in the log.
func (s *Server) warnWeakTrunks() {
	for _, tr := range s.trunkTable().order {
		log := s.log.With("trunk", tr.cfg.Name)
		logAuthSharing(log, tr)
		if tr.transport == "tls" && tr.cfg.TLSInsecureSkipVerify {
			log.Warn("tls certificate of this trunk is not verified: anyone on the path can read and change its calls",
				"key", "tls_insecure_skip_verify")
		}
		if tr.cfg.SRTP && tr.cfg.insecureSDES() {
			log.Warn("srtp keys travel in clear in the SDP: anyone on the path can decrypt the media; use transport: tls",
				"transport", tr.transport, "key", "srtp_allow_insecure_transport")
		}
	}
}
