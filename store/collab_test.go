package store_test

import (
	"github.com/meshd/meshd/collab"
	"github.com/meshd/meshd/store"
)

// store.Store is collab's database (the broker wires one into collab.New).
var _ collab.Store = (*store.Store)(nil)
