// Package agentpb holds the agent's gRPC API (package haroll.agent.v1),
// generated from agent.proto by `make proto`. Do not edit the *.pb.go files.
// Two hand-written files go with them: names.go, the one mapping between the
// Phase and SlotResult enums and their text forms, and keepalive.go, the
// HTTP/2 keepalive settings a coordinator and an agent share.
package agentpb
