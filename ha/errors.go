package ha

import "errors"

// ErrLeadershipLost is the cause of a leader context cancelled because the
// lock's connection failed its check or died; the wrapping error says how.
var ErrLeadershipLost = errors.New("leadership lost")

// ErrRunning is returned by Run when the Leader is already running.
var ErrRunning = errors.New("ha: leader already running")

// errJobReturned ends a term whose job returned on its own: the lock is
// released so the job runs again (here or on another replica).
var errJobReturned = errors.New("ha: job returned while leading")
