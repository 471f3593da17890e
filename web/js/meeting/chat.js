// The meeting's chat: the log (room and private conversations, unread counts), its history
// from the server and the browser's copy (../storage.js), and sending.
// A part of the meeting (see ../meeting.js): `this` is the whole meeting.

import { get, idempotencyKey, post } from '../api.js';
import { formatTime, t } from '../i18n.js';
import { cachedChat, saveChat } from '../storage.js';
import { errorText, h, toast } from '../ui.js';

export class Chat {
  conversationWith(other) {
    if (!other || other === 'room') return 'room';
    // The functions' order: moderators before guests, then by id.
    const rank = (p) => (p.startsWith('m:') ? '0' : '1') + p;
    const [a, b] = [this.me, other].sort((x, y) => (rank(x) < rank(y) ? -1 : 1));
    return `p/${a}/${b}`;
  }

  refreshChatTargets() {
    const current = this.chatTo.value || 'room';
    const label = (conv, name) => {
      const n = this.unread.get(conv) || 0;
      return n ? `${name} (${t('chat_unread', n)})` : name;
    };
    const options = [h('option', { value: 'room' }, label('room', t('chat_everyone')))];
    for (const p of this.peers.values()) {
      options.push(h('option', { value: p.participant }, label(this.conversationWith(p.participant), p.name)));
    }
    this.chatTo.replaceChildren(...options);
    this.chatTo.value = [...this.chatTo.options].some((o) => o.value === current) ? current : 'room';
    this.renderBadges();
  }

  viewConversation() {
    const conv = this.conversationWith(this.chatTo.value);
    this.unread.delete(conv);
    for (const li of this.chatList.querySelectorAll(`li.unread[data-conversation="${conv}"]`)) li.classList.remove('unread');
    this.refreshChatTargets();
  }

  async loadHistory() {
    // The browser's copy shows at once; the server's answer then decides what stays.
    const cached = cachedChat(this.me, this.room);
    for (const m of cached) this.addMessage(m, false);
    const pages = [get(`/api/rooms/${this.room}/chat?limit=100`)];
    for (const p of this.peers.keys()) pages.push(get(`/api/rooms/${this.room}/chat?limit=100&with=${encodeURIComponent(p)}`));
    const results = await Promise.allSettled(pages);
    const confirmed = new Set();
    for (const r of results) {
      if (r.status === 'fulfilled') {
        for (const m of r.value.messages) {
          confirmed.add(m.id);
          this.addMessage(m, false);
        }
      }
    }
    // A cached message the server no longer has (deleted, expired, erased) goes too, once
    // every conversation has answered: the cache never outlives the server's copy.
    if (results.every((r) => r.status === 'fulfilled')) {
      for (const m of cached) if (!confirmed.has(m.id)) this.removeMessage(m.id);
    }
    this.saveCache();
  }

  saveCache() {
    saveChat(this.me, this.room, [...this.messages.values()]);
  }

  removeMessage(id) {
    this.messages.delete(id);
    this.chatList.querySelector(`li[data-id="${CSS.escape(id)}"]`)?.remove();
  }

  addMessage(m, live) {
    if (this.messages.has(m.id)) return;
    this.messages.set(m.id, m);
    const mine = m.author === this.me;
    const author = mine ? t('you') : this.names.get(m.author) || this.peers.get(m.author)?.name || m.author.slice(0, 10);
    // Read only when the chat is open on that conversation.
    const viewing = this.panels.chat && this.conversationWith(this.chatTo.value) === m.conversation;
    const unread = live && !mine && !viewing;
    const li = h(
      'li',
      {
        'data-testid': 'chat-message',
        'data-conversation': m.conversation,
        'data-author': m.author,
        'data-id': m.id,
        class: [m.conversation !== 'room' ? 'private' : '', unread ? 'unread' : ''].join(' ').trim() || null,
      },
      h('span', { class: 'meta' }, `${author} · ${formatTime(m.posted_at)}`, m.conversation !== 'room' ? ` · ${t('chat_private')}` : ''),
      h('span', { class: 'body' }, m.body),
    );
    // Keep the log in posting order (ids sort by posting time), before what is still sending.
    const after = [...this.chatList.children].find((x) => x.dataset.id > m.id || x.classList.contains('pending'));
    this.chatList.insertBefore(li, after || null);
    if (unread) {
      this.unread.set(m.conversation, (this.unread.get(m.conversation) || 0) + 1);
      this.refreshChatTargets();
    }
    if (live) {
      li.scrollIntoView({ block: 'nearest' });
      this.saveCache();
    }
  }

  /** Queues what was typed; the queue goes out one message after the other. */
  sendChat() {
    const body = this.chatInput.value.trim();
    if (!body) return;
    const to = this.chatTo.value === 'room' ? null : this.chatTo.value;
    this.chatInput.value = '';
    const li = h(
      'li',
      { 'data-testid': 'chat-pending', class: 'pending' },
      h('span', { class: 'meta' }, t('chat_pending')),
      h('span', { class: 'body' }, body),
    );
    this.chatList.append(li);
    li.scrollIntoView({ block: 'nearest' });
    this.outbox ??= [];
    this.outbox.push({ body, to, key: idempotencyKey(), li });
    if (!this.sendingChat) this.sendOutbox();
  }

  /** Posts the queued messages in the order they were written, each retried with its own
   * idempotency key until the server has it: the store (and so everyone's log, which sorts
   * by the server's ids) receives them in that order even when an outage makes some wait,
   * and a retry of a post the server did get is not stored twice. */
  async sendOutbox() {
    this.sendingChat = true;
    let failures = 0;
    while (this.outbox.length > 0 && !this.closed) {
      const m = this.outbox[0];
      let posted;
      try {
        posted = await post(`/api/rooms/${this.room}/chat`, { body: m.body, to: m.to, idempotency_key: m.key });
      } catch (e) {
        const transient = e.code === 'network' || e.code === 'unavailable' || e.status >= 500;
        if (transient) {
          failures += 1;
          await new Promise((resolve) => setTimeout(resolve, Math.min(500 * 2 ** failures, 5_000)));
          continue;
        }
        // Refused (too long, not allowed): say so, and give the text back to edit.
        toast(errorText(e), 'error');
        this.outbox.shift();
        m.li.remove();
        if (!this.chatInput.value) this.chatInput.value = m.body;
        continue;
      }
      failures = 0;
      this.outbox.shift();
      m.li.remove();
      this.addMessage(posted, true);
      this.send({ type: 'chat', relay: posted.relay });
    }
    this.sendingChat = false;
  }
}
