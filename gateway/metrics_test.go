package gateway

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/segue-rtc/segue/webrtc"
)

// TestForeignMediaMetric: the SIP side's dropped foreign packets show as
// the counter segue_sip_rtp_foreign_packets_total, one series per protocol.
func TestForeignMediaMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(foreignMediaCollector{func() (uint64, uint64) { return 1234, 56 }})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "segue_sip_rtp_foreign_packets_total" || mf.GetType().String() != "COUNTER" {
			t.Errorf("family %s of type %s", mf.GetName(), mf.GetType())
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "protocol" {
					got[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	if got["rtp"] != 1234 || got["rtcp"] != 56 || len(got) != 2 {
		t.Errorf("series %v, want rtp 1234 and rtcp 56", got)
	}
}

func TestSIPRefusedMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(sipRefusedCounter(func() uint64 { return 789 }))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 1 || mfs[0].GetName() != "segue_sip_requests_refused_total" || mfs[0].GetType().String() != "COUNTER" ||
		mfs[0].GetMetric()[0].GetCounter().GetValue() != 789 {
		t.Fatalf("families %v, want segue_sip_requests_refused_total 789", mfs)
	}
}

// TestOpusEffortMetrics: the adaptive Opus effort shows as the gauge
// segue_webrtc_opus_fec_active and the counter
// segue_webrtc_opus_effort_switches_total.
func TestOpusEffortMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(opusEffortCollector{func() webrtc.OpusEffortStats { return webrtc.OpusEffortStats{FECActive: 3, Switches: 17} }})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		switch mf.GetType().String() {
		case "GAUGE":
			got[mf.GetName()] = m.GetGauge().GetValue()
		case "COUNTER":
			got[mf.GetName()] = m.GetCounter().GetValue()
		}
	}
	if got["segue_webrtc_opus_fec_active"] != 3 || got["segue_webrtc_opus_effort_switches_total"] != 17 || len(got) != 2 {
		t.Errorf("metrics %v, want the FEC gauge at 3 and 17 switches", got)
	}
}
