package meshd

// The reserved system mesh (store migration system_mesh): an archived mesh,
// so no hello ever resolves a member of it and no client can join, read or
// be woken in it. Each replica's delivery canary (package canary) sends
// its rows there, as SystemMemberID, to a target of its own.
const (
	SystemMeshID   = "meshd-system"
	SystemMemberID = "meshd-system-canary"
)
