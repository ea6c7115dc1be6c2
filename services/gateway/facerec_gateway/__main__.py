"""Run the gateway: ``python -m facerec_gateway``."""

import uvicorn
from facerec_common.logs import configure_logging

from facerec_gateway.app import create_app
from facerec_gateway.settings import GatewaySettings


def main() -> None:
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level, settings.log_format)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
    )


main()
