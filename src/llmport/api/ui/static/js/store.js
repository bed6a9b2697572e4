// Conversations, kept in this browser (localStorage) only.

const STORAGE = "llmport.conversations";

export class Conversations {
  constructor() {
    try {
      this.items = JSON.parse(localStorage.getItem(STORAGE) || "[]");
    } catch {
      this.items = [];
    }
    if (!Array.isArray(this.items)) this.items = [];
  }

  create(model) {
    const conversation = {
      id: `c${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`,
      title: "New chat",
      model,
      system: "",
      params: { temperature: 0.7, top_p: 1, max_tokens: 512, seed: "" },
      messages: [],
      updated: Date.now(),
    };
    this.items.unshift(conversation);
    this.save();
    return conversation;
  }

  get(id) {
    return this.items.find((c) => c.id === id) || null;
  }

  remove(id) {
    this.items = this.items.filter((c) => c.id !== id);
    this.save();
  }

  touch(conversation) {
    conversation.updated = Date.now();
    const first = conversation.messages.find((m) => m.role === "user");
    if (first && conversation.title === "New chat") conversation.title = first.content.slice(0, 48);
    this.save();
  }

  save() {
    try {
      localStorage.setItem(STORAGE, JSON.stringify(this.items));
    } catch {
      // Storage full: the conversation still lives on this page.
    }
  }
}
