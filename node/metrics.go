package node

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/keyhole-p2p/keyhole/board"
	"github.com/keyhole-p2p/keyhole/stunturn"
)

// metrics are the node's Prometheus series. They count events, never
// who caused them: no address, key or room appears in a label.
type metrics struct {
	reg         *prometheus.Registry
	posts       *prometheus.CounterVec
	delivered   prometheus.Counter
	slowDropped prometheus.Counter
	work        *prometheus.CounterVec
	refused     *prometheus.CounterVec
	mesh        *prometheus.CounterVec
	dht         *prometheus.CounterVec
	tokens      prometheus.Counter
	peers       prometheus.Gauge
}

func newMetrics(s *Server, reg *prometheus.Registry) *metrics {
	m := &metrics{
		reg: reg,
		posts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyhole_node_room_posts_total", Help: "Room posts delivered, by origin (local: posted here; mesh: forwarded by another node).",
		}, []string{"origin"}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyhole_node_room_events_delivered_total", Help: "Events queued to room subscribers.",
		}),
		slowDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyhole_node_room_subscribers_dropped_total", Help: "Room streams closed for falling behind.",
		}),
		work: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyhole_node_pow_checks_total", Help: "Proof-of-work checks by result (ok, missing, malformed, refused, reused, busy).",
		}, []string{"result"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyhole_node_refused_total", Help: "Requests refused before any work check, by reason.",
		}, []string{"reason"}),
		mesh: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyhole_node_mesh_messages_total", Help: "Node-to-node room posts by outcome.",
		}, []string{"result"}),
		dht: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyhole_node_dht_requests_total", Help: "/dht-get and /dht-put requests by result.",
		}, []string{"op", "result"}),
		tokens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyhole_node_turn_tokens_total", Help: "TURN credentials issued by /token.",
		}),
		peers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keyhole_node_peers", Help: "Other nodes in the mesh peer set.",
		}),
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	reg.MustRegister(m.posts, m.delivered, m.slowDropped, m.work, m.refused, m.mesh, m.dht, m.tokens, m.peers,
		gauge("keyhole_node_difficulty_bits", "Proof-of-work difficulty for a client with no recent posts.", func() float64 {
			cpu, mem := s.opts.Load.Load()
			return float64(s.pricing.Bits(max(cpu, mem), 0))
		}),
		gauge("keyhole_node_load_cpu", "CPU share the node used over its last sample (0..1).", func() float64 {
			cpu, _ := s.opts.Load.Load()
			return cpu
		}),
		gauge("keyhole_node_load_memory", "Memory the node holds against its budget (0..1).", func() float64 {
			_, mem := s.opts.Load.Load()
			return mem
		}),
		gauge("keyhole_node_room_subscribers", "Open room streams.", func() float64 {
			_, n := s.hub.counts()
			return float64(n)
		}),
		gauge("keyhole_node_rooms", "Rooms with at least one subscriber.", func() float64 {
			n, _ := s.hub.counts()
			return float64(n)
		}),
		gauge("keyhole_node_pow_spent_cached", "Spent proof-of-work solutions remembered against replay.", func() float64 {
			return float64(s.issuer.Spent())
		}),
	)
	if b, ok := s.opts.Board.(interface{ Stats() board.Stats }); ok {
		reg.MustRegister(
			gauge("keyhole_board_connections", "WebSocket connections to the board.", func() float64 { return float64(b.Stats().Connections) }),
			gauge("keyhole_board_presences", "Devices waiting on the board.", func() float64 { return float64(b.Stats().Presences) }),
			gauge("keyhole_board_channels", "Open rendezvous channels.", func() float64 { return float64(b.Stats().Channels) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keyhole_board_channels_completed_total", Help: "Rendezvous channels both sides completed."},
				func() float64 { return float64(b.Stats().Completed) }),
		)
	}
	if tu, ok := s.opts.TURN.(interface{ Stats() stunturn.Stats }); ok {
		reg.MustRegister(
			gauge("keyhole_turn_allocations", "TURN relays open now.", func() float64 { return float64(tu.Stats().Allocations) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keyhole_turn_allocations_total", Help: "TURN relays opened."},
				func() float64 { return float64(tu.Stats().AllocationsTotal) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keyhole_turn_refused_total", Help: "TURN requests refused (credentials or quota)."},
				func() float64 { return float64(tu.Stats().Refused) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keyhole_turn_relayed_bytes_total", Help: "Payload bytes relayed by TURN, both directions."},
				func() float64 { return float64(tu.Stats().BytesRelayed) }),
		)
	}
	// Go runtime and process series, unless the caller's registry has them.
	_ = reg.Register(collectors.NewGoCollector())
	_ = reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
