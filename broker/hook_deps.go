package broker

// Hooks is what POST /hook/set-status (hook.go) asks of the database.
type Hooks interface{}
