from facerec_detector.worker import main

main()
