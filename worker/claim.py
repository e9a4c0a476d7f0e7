"""arq's Worker, claiming every job one poll found in a single Redis call.

arq 0.28 claims each job on its own: WATCH its in-progress key, EXISTS, ZSCORE, then
MULTI PSETEX EXEC: four round trips per job, most of arq's own cost per job (mostly
redis-py's, docs/HOT_PATH.md). ClaimingWorker makes the same
checks and writes the same key in one Lua script for all the ids of a poll, up to the
free job slots: atomic per job like arq's transaction, so two workers never both run
a job, and a job deferred to a later time is not started early. Everything after the
claim (fetching the job, tries, timeouts, retries, results) is arq's own run_job.
"""

from __future__ import annotations

from typing import Any

from arq.constants import in_progress_key_prefix
from arq.utils import timestamp_ms
from arq.worker import Worker

# KEYS[1] the queue; ARGV[1] now (ms), ARGV[2] in-progress expiry (ms), ARGV[3] the
# in-progress key prefix, ARGV[4] how many to claim at most, ARGV[5..] job ids.
# Returns [id, score, id, score, ...] of the jobs claimed, in the order given.
CLAIM_LUA = """
local out, claimed = {}, 0
local now, limit = tonumber(ARGV[1]), tonumber(ARGV[4])
for i = 5, #ARGV do
  if claimed >= limit then break end
  local id = ARGV[i]
  local key = ARGV[3] .. id
  if redis.call('EXISTS', key) == 0 then
    local score = redis.call('ZSCORE', KEYS[1], id)
    if score and tonumber(score) > 0 and tonumber(score) <= now then
      redis.call('PSETEX', key, ARGV[2], '1')
      out[#out + 1] = id
      out[#out + 1] = score
      claimed = claimed + 1
    end
  end
end
return out
"""


class ClaimingWorker(Worker):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._claim: Any = None

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        free = self.max_jobs - self.job_counter
        if free <= 0 or not job_ids:
            return
        if self._claim is None:
            self._claim = self.pool.register_script(CLAIM_LUA)
        reply = await self._claim(
            keys=[self.queue_name],
            args=[timestamp_ms(), int(self.in_progress_timeout_s * 1000),
                  in_progress_key_prefix, free, *job_ids],
        )
        for i in range(0, len(reply), 2):
            job_id, score = reply[i].decode(), int(float(reply[i + 1]))
            await self.sem.acquire()  # never waits: at most `free` jobs were claimed
            self.job_counter += 1
            task = self.loop.create_task(self.run_job(job_id, score))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task
