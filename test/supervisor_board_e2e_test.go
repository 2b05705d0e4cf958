//go:build e2e

package test

import (
	"testing"
)

// boardJS reads the board of a supervisor's console: each queue's
// waiting count, each agent's presence and conversations, today's counts.
const boardJS = `const b = q('board'); if (!b) return false;
const queues = {}; for (const el of b.querySelectorAll('[data-testid="board-queue"]')) queues[el.dataset.queue] = Number(el.dataset.waiting);
const agents = {}; for (const el of b.querySelectorAll('[data-testid="board-agent"]')) agents[el.dataset.agent] = {
  presence: el.dataset.presence,
  convs: [...el.querySelectorAll('[data-testid="board-conversation"]')].map((c) => c.dataset.conversation),
};
const today = (id) => Number(b.querySelector('[data-testid="today-' + id + '"]')?.textContent ?? -1);
return {queues, agents, conversations: today('conversations'), answered: today('answered')};`

type shownBoard struct {
	Queues map[string]int `json:"queues"`
	Agents map[string]struct {
		Presence string   `json:"presence"`
		Convs    []string `json:"convs"`
	} `json:"agents"`
	Conversations int `json:"conversations"`
	Answered      int `json:"answered"`
}

// TestSupervisorBoard: Sam's console (Chromium) shows the board and it
// follows what happens without a reload: Ann waits in support, Alice
// accepts her, today's counts move. From the board Sam reads Ann's
// conversation and reassigns it to Bob, who gets its history. Alice, a
// plain agent, is refused the board.
func TestSupervisorBoard(t *testing.T) {
	g := startGateway(t, withSupervisor())
	aliceWS := agentWS(t, g, g.login(t, "alice"))
	bobWS := agentWS(t, g, g.login(t, "bob"))
	aliceWS.send(map[string]any{"type": "board.subscribe", "id": "b1"})
	if f := aliceWS.expect("error"); f["code"] != "not_supervisor" {
		t.Errorf("Alice's board.subscribe: %v, want not_supervisor", f)
	}

	sam := openConsole(t, g, "sam", "/console")
	// Sam watches; he takes no chats.
	call[bool](sam, fn("", `const s = q('presence'); s.value = 'away'; s.dispatchEvent(new Event('change')); return true;`))
	waitJS[bool](sam, "the board", fn("", `return !!q('board')?.querySelector('[data-testid="board-agent"][data-agent="sam"][data-presence="away"]');`))

	_, conv := g.newConversation(t, "Ann")
	g.newConversation(t, "Bea") // left waiting
	board := waitJS[shownBoard](sam, "Ann and Bea waiting", fn("", `const v = (() => {`+boardJS+`})(); return v && v.queues.support === 2 ? v : false;`))
	if board.Conversations != 2 || board.Answered != 0 {
		t.Errorf("today before any accept: %d conversations, %d answered; want 2, 0", board.Conversations, board.Answered)
	}

	aliceWS.accept(conv.ID, "alice")
	aliceWS.send(map[string]any{"type": "message", "id": "a1", "conversation_id": conv.ID, "text": "Hello Ann, Alice here"})
	board = waitJS[shownBoard](sam, "Alice holding Ann's chat", fn("id", `const v = (() => {`+boardJS+`})();
return v && v.queues.support === 1 && v.agents.alice?.convs.includes(id) && v.answered === 1 ? v : false;`), conv.ID)
	if board.Agents["alice"].Presence != "available" || board.Agents["bob"].Presence != "available" {
		t.Errorf("presence on the board: %+v", board.Agents)
	}

	// Sam reads the conversation from the board.
	waitJS[bool](sam, "open Ann's conversation", fn("id", `const b = q('board').querySelector('[data-testid="board-conversation"][data-conversation="' + id + '"] [data-testid="board-open"]');
if (!b) return false; b.click(); return true;`), conv.ID)
	sam.waitMessage("Hello Ann, Alice here")

	// And hands it to Bob.
	waitJS[bool](sam, "reassign to Bob", fn("id", `const row = q('board').querySelector('[data-testid="board-conversation"][data-conversation="' + id + '"]');
if (!row) return false; const s = row.querySelector('[data-testid="reassign-target"]'); s.value = 'bob';
row.querySelector('[data-testid="reassign"]').click(); return true;`), conv.ID)
	if f := bobWS.expect("history"); f["conversation_id"] != conv.ID {
		t.Errorf("Bob got the history of %v, want %s", f["conversation_id"], conv.ID)
	}
	waitJS[bool](sam, "Bob holding Ann's chat on the board", fn("id", `const v = (() => {`+boardJS+`})();
return v && v.agents.bob?.convs.includes(id) && !v.agents.alice?.convs.includes(id);`), conv.ID)
}
