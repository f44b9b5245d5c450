package node

import (
	"context"
	"math"
	"runtime"
	rtmetrics "runtime/metrics"
	"sync"
	"time"
)

// LoadMeter reports how busy the node is, as CPU and memory shares in
// 0..1. The price of work follows max(cpu, mem), so a node near its
// limits asks more and clients drift to quieter nodes.
type LoadMeter interface {
	Load() (cpu, mem float64)
}

// ProcessLoad measures this process: the CPU time it used over the last
// sample interval against the CPUs it may use, and the memory the Go
// runtime holds against a budget. It measures the node itself rather
// than the machine, so a volunteer's other work does not price the
// node's clients, and what a flood costs the node is what its clients
// pay for.
type ProcessLoad struct {
	// Budget returns the bytes the node may use; it is read at every
	// sample. board.SystemMemory is a good one.
	Budget func() uint64
	// Interval between samples; zero means one second.
	Interval time.Duration

	mu       sync.Mutex
	cpu, mem float64
}

// Load implements LoadMeter.
func (p *ProcessLoad) Load() (cpu, mem float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cpu, p.mem
}

// Run samples until ctx ends.
func (p *ProcessLoad) Run(ctx context.Context) {
	iv := p.Interval
	if iv <= 0 {
		iv = time.Second
	}
	samples := []rtmetrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	lastCPU, lastWall := cpuTime(), time.Now()
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		nowCPU, nowWall := cpuTime(), time.Now()
		wall := nowWall.Sub(lastWall)
		cpu := 0.0
		if wall > 0 {
			cpu = float64(nowCPU-lastCPU) / float64(wall) / float64(runtime.GOMAXPROCS(0))
		}
		lastCPU, lastWall = nowCPU, nowWall
		rtmetrics.Read(samples)
		used := samples[0].Value.Uint64() - samples[1].Value.Uint64()
		mem := 0.0
		if p.Budget != nil {
			if b := p.Budget(); b > 0 {
				mem = float64(used) / float64(b)
			}
		}
		p.mu.Lock()
		// Smooth the CPU share over about two samples: one busy tick
		// should not double a price, a sustained load should.
		p.cpu = clamp01(0.5*p.cpu + 0.5*cpu)
		p.mem = clamp01(mem)
		p.mu.Unlock()
	}
}

func clamp01(x float64) float64 {
	if math.IsNaN(x) || x < 0 {
		return 0
	}
	return min(x, 1)
}
