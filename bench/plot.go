package main

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// writePlots writes bench-throughput.png (inserted/s and completed/s per
// system) and bench-latency.png (latency percentiles per system, on a
// logarithmic axis) into dir.
func writePlots(dir string, rep *report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create the plot directory: %w", err)
	}
	if err := plotThroughput(filepath.Join(dir, "bench-throughput.png"), rep); err != nil {
		return fmt.Errorf("write the throughput plot: %w", err)
	}
	if err := plotLatency(filepath.Join(dir, "bench-latency.png"), rep); err != nil {
		return fmt.Errorf("write the latency plot: %w", err)
	}
	return nil
}

func plotTitle(rep *report, subject string) string {
	return fmt.Sprintf("%s (%d CPUs, %d producers, %d workers, %s measured)", subject, rep.Machine.CPUs, rep.Producers, rep.Workers, rep.Duration)
}

func plotThroughput(path string, rep *report) error {
	p := plot.New()
	p.Title.Text = plotTitle(rep, "Throughput, one insert per call")
	p.Y.Label.Text = "per second"
	p.Y.Min = 0

	inserted := make(plotter.Values, len(rep.Results))
	completed := make(plotter.Values, len(rep.Results))
	names := make([]string, len(rep.Results))
	for i, r := range rep.Results {
		inserted[i] = r.InsertRate
		completed[i] = r.CompleteRate
		names[i] = r.System
		// Leave room above the bars for the legend.
		p.Y.Max = max(p.Y.Max, 1.25*r.InsertRate, 1.25*r.CompleteRate)
	}

	width := vg.Points(22)
	insertBars, err := plotter.NewBarChart(inserted, width)
	if err != nil {
		return err
	}
	insertBars.Color = color.RGBA{R: 160, G: 190, B: 230, A: 255}
	insertBars.Offset = -width / 2
	completeBars, err := plotter.NewBarChart(completed, width)
	if err != nil {
		return err
	}
	completeBars.Color = color.RGBA{R: 30, G: 90, B: 170, A: 255}
	completeBars.Offset = width / 2

	p.Add(insertBars, completeBars, plotter.NewGrid())
	p.Legend.Add("inserted/s (acknowledged)", insertBars)
	p.Legend.Add("completed/s (work begun)", completeBars)
	p.Legend.Top = true
	p.NominalX(names...)
	return p.Save(vg.Points(float64(120*len(names)+120)), 4*vg.Inch, path)
}

func plotLatency(path string, rep *report) error {
	p := plot.New()
	p.Title.Text = plotTitle(rep, "Latency from insert acknowledgement to start of work")
	p.Y.Label.Text = "milliseconds (log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Add(plotter.NewGrid())

	for i, r := range rep.Results {
		if r.Latency == nil {
			continue
		}
		// The log axis cannot show zero, so values are floored at 1 µs.
		points := plotter.XYs{
			{X: 0, Y: max(r.Latency.P50Ms, 0.001)},
			{X: 1, Y: max(r.Latency.P90Ms, 0.001)},
			{X: 2, Y: max(r.Latency.P99Ms, 0.001)},
			{X: 3, Y: max(r.Latency.MaxMs, 0.001)},
		}
		line, scatter, err := plotter.NewLinePoints(points)
		if err != nil {
			return err
		}
		line.Color = plotutil.Color(i)
		line.Dashes = plotutil.Dashes(i)
		scatter.Color = plotutil.Color(i)
		scatter.Shape = plotutil.Shape(i)
		p.Add(line, scatter)
		p.Legend.Add(r.System, line, scatter)
	}
	// The lower right corner stays free: the lines rise to the right.
	p.Legend.Top = false
	p.Legend.Left = false
	p.NominalX("p50", "p90", "p99", "max")
	return p.Save(8*vg.Inch, 5*vg.Inch, path)
}
