"""Chat rooms in the browser client, in a real headless Chromium (issue
18): the page joins a room a classic client is in, shows who is there,
talks to everyone and whispers to one member, and after a reload takes the
room back (its tab and members) without leaving it: the classic member sees
nobody leave or come back."""

from __future__ import annotations

from typing import Any

from tests import test_web_client as chromium
from tests.browser import BrowserCase
from tests.client import deferred_test


class RoomPageTests(chromium.WebPage, BrowserCase):
    check = "the web client's chat room test"

    start = chromium.WebClientTests.start

    async def room_state(self) -> dict[str, Any]:
        script = """
            const tabs = [...document.querySelectorAll('#room-tabs .room-tab .tab-name')];
            return {
                tabs: tabs.map((e) => e.textContent),
                shown: !document.getElementById('room-window').hidden,
                members: [...document.querySelectorAll('#room-members .room-member')]
                    .map((e) => e.dataset.name),
                to: [...document.querySelectorAll('#room-to option')].map((e) => e.value),
                lines: [...document.querySelectorAll('#room-log .room-line')]
                    .map((e) => [e.dataset.from, e.querySelector('.message-text').textContent,
                                 e.classList.contains('whisper')]),
            };
        """
        return await self.in_browser(self.browser.execute_script, script)

    async def wait_room(self, what: str, check: Any) -> dict[str, Any]:
        seen: list[dict[str, Any]] = [{}]

        async def done() -> bool:
            seen[0] = await self.room_state()
            return bool(check(seen[0]))

        try:
            await self.until(done, what)
        except self.failureException as e:
            raise self.failureException(f"{e}; the page shows {seen[0]}") from None
        return seen[0]

    async def say(self, text: str, to: str = "") -> None:
        await self.in_browser(
            self.browser.execute_script,
            "const s = document.getElementById('room-to'); s.value = arguments[0];"
            " s.dispatchEvent(new Event('change'));",
            to,
        )
        field = await self.find("#room-text")
        await self.in_browser(field.send_keys, text)
        await self.click("#room-send")

    @deferred_test
    async def test_join_talk_whisper_and_take_the_room_back_after_a_reload(self) -> None:
        server = await self.start()
        bob_bos = await server.session("Bob")
        self.addCleanup(bob_bos.close)
        bob = await bob_bos.join_room("Tea Room")
        self.addCleanup(bob.close)
        await self.sign_on("Alice")
        await self.wait_states([("Alice", "connected")])

        name = await self.find("#room-join-name")
        await self.in_browser(name.send_keys, "tea room")
        await self.click("#room-join-submit")
        state = await self.wait_room(
            "the room with Bob in it", lambda s: sorted(s["members"]) == ["Alice", "Bob"]
        )
        self.assertEqual(state["tabs"], ["Tea Room"])
        self.assertEqual(state["to"], ["", "Bob"])  # everyone, or Bob alone
        self.assertEqual(await bob.wait_joined(), ["Alice"])

        await self.say("hello, everyone")
        sender, text, _ = await bob.hear()
        self.assertEqual((sender, text), ("Alice", b"hello, everyone"))
        await self.say("just for you", to="Bob")
        sender, text, _ = await bob.hear()
        self.assertEqual((sender, text), ("Alice", b"just for you"))
        state = await self.wait_room(
            "both lines, the second a whisper", lambda s: len(s["lines"]) == 2
        )
        self.assertEqual(
            state["lines"],
            [["Alice", "hello, everyone", False], ["Alice", "just for you", True]],
        )

        # A reload: the room comes back with who is there; Alice never left.
        await self.in_browser(self.browser.refresh)
        await self.wait_states([("Alice", "connected")])
        await self.wait_room("the room's tab back after the reload", lambda s: s["tabs"])
        await self.click("#room-tabs .room-tab")
        state = await self.wait_room(
            "the room back, with who is in it",
            lambda s: s["tabs"] == ["Tea Room"] and sorted(s["members"]) == ["Alice", "Bob"],
        )
        self.assertEqual(state["lines"], [])  # what was said before the reload is not kept
        bob.say(b"welcome back", reflect=False)
        await self.wait_room(
            "Bob's line after the reload",
            lambda s: ["Bob", "welcome back", False] in s["lines"],
        )
        room = next(iter(server.server.chat.rooms.rooms.values()))
        self.assertEqual(
            sorted(m.user.screen_name for m in room.members.values()), ["Alice", "Bob"]
        )
        # Bob saw nobody leave: the next thing he hears is Alice's next line.
        await self.say("still here")
        sender, text, _ = await bob.hear()
        self.assertEqual((sender, text), ("Alice", b"still here"))
        self.assertEqual(await self.errors_logged(), [])
