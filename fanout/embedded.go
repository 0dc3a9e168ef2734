package fanout

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// readyTimeout bounds how long StartEmbedded waits for the listener.
const readyTimeout = 10 * time.Second

// EmbeddedConfig configures an in-process NATS server. Zero values take the
// documented defaults.
type EmbeddedConfig struct {
	// Host to listen on. Default "127.0.0.1": the embedded server serves
	// this process (single-node meshd, tests), not the network.
	Host string
	// Port to listen on: 0 means the NATS default 4222, -1 a random free
	// port (read it back with ClientURL).
	Port int
	// StoreDir is passed to the server for its on-disk state. Optional;
	// JetStream stays disabled, meshd only uses core NATS.
	StoreDir string
	// Logger receives the server's log lines. The zero Logger discards.
	Logger zerolog.Logger
	// InProcessOnly opens no TCP listener (Host and Port are ignored):
	// clients of this process connect through InProcess. A single-node
	// meshd needs no port for its bus, and holds none another listener
	// could collide with.
	InProcessOnly bool
}

// EmbeddedServer is a NATS server running inside this process.
type EmbeddedServer struct {
	srv *server.Server // immutable after StartEmbedded
}

// StartEmbedded starts a core NATS server in-process and waits until it
// accepts connections. Used by meshd when NATS_URL is unset and by tests.
func StartEmbedded(cfg EmbeddedConfig) (*EmbeddedServer, error) {
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Port < -1 {
		return nil, errors.New("fanout: embedded: Port must be -1, 0 or a port number")
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "meshd-embedded",
		Host:       cfg.Host,
		Port:       cfg.Port,
		StoreDir:   cfg.StoreDir,
		NoSigs:     true, // signals belong to meshd's own shutdown
		DontListen: cfg.InProcessOnly,
	})
	if err != nil {
		return nil, fmt.Errorf("fanout: embedded: %w", err)
	}
	srv.SetLogger(serverLogger{cfg.Logger.With().Str("component", "nats-server").Logger()}, false, false)
	go srv.Start()
	if !srv.ReadyForConnections(readyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("fanout: embedded: not ready for connections on %s:%d after %v", cfg.Host, cfg.Port, readyTimeout)
	}
	return &EmbeddedServer{srv: srv}, nil
}

// ClientURL is the nats:// URL clients connect to (the real port when the
// config asked for a random one). Meaningless with InProcessOnly.
func (e *EmbeddedServer) ClientURL() string { return e.srv.ClientURL() }

// InProcess is the connection provider for Config.InProcess: a client
// connection without a socket.
func (e *EmbeddedServer) InProcess() nats.InProcessConnProvider { return e.srv }

// Shutdown stops the server, disconnecting its clients, and waits for it.
func (e *EmbeddedServer) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// serverLogger adapts zerolog to server.Logger.
type serverLogger struct{ log zerolog.Logger }

func (l serverLogger) Noticef(format string, v ...any) { l.log.Info().Msgf(format, v...) }
func (l serverLogger) Warnf(format string, v ...any)   { l.log.Warn().Msgf(format, v...) }
func (l serverLogger) Fatalf(format string, v ...any)  { l.log.Error().Msgf(format, v...) }
func (l serverLogger) Errorf(format string, v ...any)  { l.log.Error().Msgf(format, v...) }
func (l serverLogger) Debugf(format string, v ...any)  { l.log.Debug().Msgf(format, v...) }
func (l serverLogger) Tracef(format string, v ...any)  { l.log.Trace().Msgf(format, v...) }
