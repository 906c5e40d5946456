"""Wiring of one exporter process: accounts, clients, poller, job directory, exposition.

`Exporter.reload()` re-reads the accounts (the configuration file, or the password
file of the flat settings) and swaps clients and jobs in without a restart. After an
invalid file it keeps the running configuration.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from exporter.accounts import Account, ConfigFileError
from exporter.client import OmaClient
from exporter.fleet import JobDirectory
from exporter.poller import Poller
from exporter.render import render_job
from exporter.server import Exposition
from exporter.settings import Settings, SettingsError

log = logging.getLogger(__name__)


class Exporter:
    """Builds and runs everything except the HTTP server, which the caller owns."""

    def __init__(self, settings: Settings, load_accounts: Callable[[], list[Account]]):
        self._settings = settings
        self._load_accounts = load_accounts
        self._reload_lock = threading.Lock()
        accounts = load_accounts()
        self._accounts = {account.name: account for account in accounts}
        self._clients = {account.name: self._build_client(account) for account in accounts}
        self.poller = Poller(
            dict(self._clients), {},
            interval=settings.poll_interval,
            deadline=settings.poll_deadline,
            stale_after=settings.poll_stale_after,
            finished_interval=settings.poll_finished_interval,
            finished_retention=settings.poll_finished_retention,
            concurrency=settings.poll_concurrency,
            prepare=render_job,
            expect_jobs=True,
        )
        self.directory = JobDirectory(
            accounts, self._clients, self.poller.set_jobs, shard=settings.shard, total_shards=settings.total_shards
        )
        self.exposition = Exposition(
            self.poller.view,
            folders=settings.collector_folders,
            series_limit=settings.collector_series_limit,
            fleet_source=self.directory.state,
        )
        log.info(
            "accounts loaded",
            extra={"accounts": ",".join(sorted(self._accounts)), "shard": settings.shard,
                   "total_shards": settings.total_shards},
        )

    def start(self) -> None:
        self.poller.start()
        self.directory.start(on_first_pass=self.poller.jobs_known)

    def stop(self) -> None:
        self.directory.stop()
        self.poller.stop(timeout=2.0)
        for client in self._clients.values():
            client.close()

    def reload(self) -> tuple[bool, str]:
        """Re-read the accounts; return whether it worked and a one-line message."""
        with self._reload_lock:
            try:
                accounts = self._load_accounts()
            except (ConfigFileError, SettingsError) as error:
                log.error("configuration reload failed; keeping the running configuration", extra={"error": str(error)})
                self.directory.reload_failed()
                return False, str(error)
            clients = {}
            replaced = []
            for account in accounts:
                old = self._accounts.get(account.name)
                if old == account and old.password == account.password:
                    clients[account.name] = self._clients[account.name]
                else:
                    clients[account.name] = self._build_client(account)
            for name, client in self._clients.items():
                if clients.get(name) is not client:
                    replaced.append(client)
            self.poller.set_clients(clients)
            self.directory.set_accounts(accounts, clients)
            self._accounts = {account.name: account for account in accounts}
            self._clients = clients
            for client in replaced:
                client.close()
            log.info("configuration reloaded", extra={"accounts": ",".join(sorted(self._accounts))})
            return True, "reloaded 1 account" if len(accounts) == 1 else f"reloaded {len(accounts)} accounts"

    def _build_client(self, account: Account) -> OmaClient:
        settings = self._settings
        return OmaClient(
            account.url, account.user, account.password,
            client_name=settings.oma_client,
            ca_file=str(account.ca_file) if account.ca_file else None,
            connect_timeout=settings.poll_connect_timeout,
            read_timeout=settings.poll_read_timeout,
            retries=settings.poll_retries,
            max_response_size=settings.poll_max_response_size,
            session_token=account.session_token,
            session_token_duration=account.session_token_duration,
            pool_size=settings.poll_concurrency,
        )
