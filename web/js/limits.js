// The longest values the API accepts, in characters, so a form never lets someone type what
// the server will refuse. The server's own limits are the source: a test of the portal
// (src/web.rs) fails when one of these differs from the domain's constant.
export const LIMITS = {
  nickname: 32,
  room_name: 80,
  person_name: 100,
  organisation: 200,
  chat_message: 4000,
  password: 256,
  reason: 500,
};
